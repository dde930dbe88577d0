"""Every page a signed-in owner reaches, the signed-out pages (log in, sign
up, the code step, the unsubscribe link) and the error pages (403, 404,
413), laid out in Chromium in Russian and Vietnamese at 375 and 1400 px
with long data on them: a long Russian server name, a long Vietnamese
mailing name, a long address. Nothing makes the document scroll sideways,
no element or text reaches past the right edge of the screen or of the box
that clips it unless a scroll box of its own holds it, no text is squeezed
into a column a word wide, and no placeholder is cut off. The routes come from the resolver
(tests/security/walk.py), so a new page is walked without anyone adding it.
One browser, one tab: a page is loaded once per language and laid out
again at the second width."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import ApiKey, Invitation, Role, Tenant, WebhookEndpoint
from mailing.models import BounceReport, Contact, ContactImport, ContactList, Letter, Mailing, MailTemplate, Suppression
from mailing.unsubscribe import make_token
from servers.models import BounceMailbox, ConnectionTest, Health, SmtpServer
from tests.conftest import make_person
from tests.mailing.dashboard_builders import running_mailing
from tests.security.walk import concrete_urls, tenant_a_objects, tenant_routes

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (375, 1400)
LONG_EMAIL = "nguyen.thi.minh.khai.phong.kinh.doanh@congty-xuat-nhap-khau.com.vn"
LONG = {
    "organisation": "ООО «Северо-Западная торгово-промышленная компания Электроснабжение»",
    "server": "Основной корпоративный почтовый сервер отдела продаж Северо-Западного филиала",
    "mailing": "Chương trình khuyến mãi cuối năm dành cho khách hàng thân thiết khu vực miền Nam",
    "list": "Khách hàng doanh nghiệp đã đăng ký nhận bản tin hàng tháng năm 2026",
    "template": "Еженедельная информационная рассылка для постоянных клиентов",
    "subject": "Thông báo quan trọng về chương trình khuyến mãi cuối năm dành cho khách hàng",
    "host": "smtp.mail-relay-northwest-division.congty-xuat-nhap-khau.com.vn",
    "hook": "https://hooks.congty-xuat-nhap-khau.com.vn/integrations/postroute/webhooks/receive-events-2026",
    "reply": "550 5.7.1 <" + LONG_EMAIL + ">: Recipient address rejected: Access denied (mailbox unavailable)",
    "key": "Интеграция с корпоративной CRM-системой отдела продаж",
}

# Elements whose right edge passes the screen, or the box that clips them
# (a card's overflow: hidden cuts the text off), unless a scroll box of their
# own holds them (a wide table's wrapper); and the document's width. Text
# hidden for screen readers and names cut with an ellipsis are meant so.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (el.classList.length ? '.' + [...el.classList].join('.') : '');
  // A table shown as stacked cards on a phone has to fit: its wrapper's
  // scroll bar is for the wide table.
  const stacked = (box) => [...box.querySelectorAll('.table-stack')]
    .some((t) => getComputedStyle(t).display === 'block');
  const edge = (el) => {
    for (let p = el; p && p !== document.body; p = p.parentElement) {
      const overflow = getComputedStyle(p).overflowX;
      if ((overflow === 'auto' || overflow === 'scroll') && !stacked(p)) return Infinity;
      if (overflow === 'hidden' || overflow === 'clip') return Math.min(width, p.getBoundingClientRect().right);
    }
    return width;
  };
  const past = [];
  const check = (node, box, rect) => {
    if (rect.width === 0 || !box.checkVisibility() || box.closest('.visually-hidden')) return;
    if (getComputedStyle(box).textOverflow === 'ellipsis') return;
    const limit = node === box ? edge(box.parentElement) : Math.min(edge(box), box.getBoundingClientRect().right);
    if (rect.right <= limit + 1) return;
    if (past.some((p) => p.node.contains(node))) return;  // the outermost is enough
    const text = node.textContent.trim().slice(0, 40);
    past.push({node, text: name(box) + ' right=' + Math.round(rect.right) + ' "' + text + '"'});
  };
  for (const el of document.body.querySelectorAll('*')) check(el, el, el.getBoundingClientRect());
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let t = texts.nextNode(); t; t = texts.nextNode()) {
    if (!t.textContent.trim()) continue;
    range.selectNodeContents(t);
    check(t, t.parentElement, range.getBoundingClientRect());
  }
  // Text squeezed into a column a word or two wide (more than four lines in
  // a box narrower than 96 px), and fields too narrow to read what is typed.
  const squeezed = [];
  const note = (el) => squeezed.push(name(el) + ' width=' + Math.round(el.getBoundingClientRect().width)
    + ' "' + (el.innerText || el.value || '').slice(0, 40) + '"');
  for (const field of document.querySelectorAll('input:not([type=checkbox], [type=radio], [type=hidden]), textarea')) {
    const r = field.getBoundingClientRect();
    if (r.width > 0 && r.width < 96 && field.checkVisibility()) note(field);
  }
  // A placeholder that is a field's only visible label, cut off by the field.
  const pen = document.createElement('canvas').getContext('2d');
  for (const field of document.querySelectorAll('input[placeholder], textarea[placeholder]')) {
    const style = getComputedStyle(field);
    if (!field.checkVisibility() || field.value) continue;
    pen.font = getComputedStyle(field, '::placeholder').font;
    const room = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    if (pen.measureText(field.placeholder).width > room + 1) {
      squeezed.push(name(field) + ' placeholder cut: "' + field.placeholder + '"');
    }
  }
  const words = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = words.nextNode(); t; t = words.nextNode()) {
    const box = t.parentElement;
    if (!t.textContent.trim() || !box.checkVisibility()) continue;
    range.selectNodeContents(t);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
    if (lines > 4 && box.getBoundingClientRect().width < 96) note(box);
  }
  return {scroll: document.scrollingElement.scrollWidth, past: past.map((p) => p.text), squeezed};
}"""


def long_data(tenant: Tenant, alice, ids: list) -> None:
    """Give tenant A's walk objects (tests/security/walk.py) long names, and
    add a running mailing whose letters failed with a long reply."""
    server = SmtpServer.objects.get(tenant=tenant)
    running = running_mailing(tenant, [server], queued=1, sent_at=[timezone.now()], failed=2, bounced=1)
    for n, letter in enumerate(Letter.objects.filter(mailing=running)):
        letter.email, letter.last_reply = f"{n}.{LONG_EMAIL}", LONG["reply"]
        letter.save(update_fields=["email", "last_reply"])
    ids.append(running.public_id)
    SmtpServer.objects.filter(pk=server.pk).update(health=Health.FAILING, health_error=LONG["reply"],
                                                   health_checked_at=timezone.now())  # fmt: skip
    ConnectionTest.objects.filter(tenant=tenant).update(error=LONG["reply"], steps=[
        {"name": "Connect", "ok": True, "ms": 3, "detail": LONG["host"]},
        {"name": "Login", "ok": False, "ms": 5, "detail": LONG["reply"]},
    ])  # fmt: skip
    # The failed import names its list: its page offers "Open <list>".
    ContactImport.objects.filter(tenant=tenant, status=ContactImport.Status.FAILED).update(
        contact_list=ContactList.objects.get(tenant=tenant)
    )
    ContactImport.objects.filter(tenant=tenant, status=ContactImport.Status.UPLOADED).update(
        header=["Địa chỉ email của khách hàng", "Наименование организации-контрагента", "Số điện thoại di động"]
    )
    tenant.name = LONG["organisation"]
    tenant.save(update_fields=["name"])
    alice.user.email = LONG_EMAIL
    alice.user.save(update_fields=["email"])
    SmtpServer.objects.filter(tenant=tenant).update(name=LONG["server"], sender_email=LONG_EMAIL, login=LONG_EMAIL,
                                                    host=LONG["host"], sender_name=LONG["organisation"])  # fmt: skip
    Mailing.objects.filter(tenant=tenant).update(name=LONG["mailing"])
    ContactList.objects.filter(tenant=tenant).update(name=LONG["list"])
    Contact.objects.filter(tenant=tenant).update(email=LONG_EMAIL, first_name="Nguyễn Thị Minh Khai")
    MailTemplate.objects.filter(tenant=tenant).update(name=LONG["template"], subject=LONG["subject"])
    BounceMailbox.objects.filter(tenant=tenant).update(login=LONG_EMAIL, email=LONG_EMAIL, host=LONG["host"])
    BounceReport.objects.filter(tenant=tenant).update(recipient=LONG_EMAIL, diagnostic="550 5.1.1 " + LONG_EMAIL)
    ContactImport.objects.filter(tenant=tenant).update(file_name=LONG["list"].replace(" ", "_") + ".csv")
    Suppression.objects.create(tenant=tenant, email=LONG_EMAIL, reason=Suppression.Reason.MANUAL, note=LONG["subject"])
    Invitation.objects.filter(tenant=tenant).update(email=LONG_EMAIL.replace("nguyen", "tran"))
    WebhookEndpoint.objects.filter(tenant=tenant).update(url=LONG["hook"])
    ApiKey.objects.filter(tenant=tenant).update(name=LONG["key"])


def owner_pages(alice, ids) -> list[str]:
    """Every tenant page that answers the owner with HTML."""
    pages = []
    for route, _ in tenant_routes():
        for url in concrete_urls(route, ids):
            response = alice.client.get(url)
            if response.status_code == 200 and "text/html" in response["Content-Type"]:
                pages.append(url)
    return pages


def check(page, url: str, problems: dict) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        found = page.evaluate(OVERFLOW)
        if found["scroll"] > width or found["past"] or found["squeezed"]:
            problems[f"{url} at {width}px"] = found


def visit(page, url: str, problems: dict, status: int = 200) -> None:
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    response = page.goto(url)
    assert (page.url, response.status) == (url, status)  # the page meant, not a redirect
    check(page, url, problems)


def rendered(page, live_server, url: str, html: str, problems: dict) -> None:
    """A page the browser cannot reach with a GET (the answer to a POST:
    403, 413, a form's errors), served as the product rendered it, with its
    real styles."""
    page.route(live_server.url + url, lambda route: route.fulfill(status=200, body=html, content_type="text/html"))
    visit(page, live_server.url + url, problems)
    page.unroute(live_server.url + url)


@pytest.mark.parametrize("language", ["ru", "vi"])
def test_no_page_is_wider_than_the_screen(page, live_server, alice, tenant_a, language, tmp_path):
    ids = tenant_a_objects(tenant_a, alice, tmp_path)
    long_data(tenant_a, alice, ids)
    alice.user.language = language
    alice.user.save(update_fields=["language"])
    urls = owner_pages(alice, ids)
    assert len(urls) > 30
    problems: dict = {}

    sign_in(page, alice, live_server)
    for url in urls:
        visit(page, live_server.url + url, problems)
    visit(page, live_server.url + "/no-such-page/", problems, status=404)
    bob = make_person("bob@acme.test", tenant_a, Role.MEMBER)
    bob.user.language = language
    bob.user.save(update_fields=["language"])
    refused = bob.client.post(reverse("servers:add"))
    assert refused.status_code == 403  # members only look at servers
    rendered(page, live_server, "/refused/", refused.content.decode(), problems)
    too_big = bob.client.post(reverse("contacts:import_upload"), {"file": "x"}, CONTENT_LENGTH=10**10)
    assert too_big.status_code == 413
    rendered(page, live_server, "/too-large/", too_big.content.decode(), problems)
    # Answers to a POST: a new API key shown once, a server form with its errors.
    key = alice.client.post(reverse("accounts:api_keys"), {"name": LONG["key"], "scopes": ["read", "mailings"]})
    assert key.status_code == 200
    rendered(page, live_server, "/new-key/", key.content.decode(), problems)
    errors = alice.client.post(reverse("servers:add"), {"name": LONG["server"], "sender_email": "x"})
    assert errors.status_code in (200, 400)
    rendered(page, live_server, "/form-errors/", errors.content.decode(), problems)

    page.context.clear_cookies()
    page.context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    for name in ("accounts:login", "accounts:signup", "accounts:password_reset"):
        visit(page, live_server.url + reverse(name), problems)
    visit(page, live_server.url + reverse("unsubscribe", args=[make_token(tenant_a.pk, LONG_EMAIL)]), problems)
    half = Client()
    half.force_login(alice.user)  # a password given, the code not yet
    page.context.add_cookies([{"name": "sessionid", "value": half.cookies["sessionid"].value, "url": live_server.url}])
    visit(page, live_server.url + reverse("accounts:login_otp"), problems)
    newcomer = make_person("dave@acme.test", tenant_a)
    newcomer.device.delete()  # signed in, the authenticator app not yet set up
    newcomer.user.language = language
    newcomer.user.save(update_fields=["language"])
    page.context.clear_cookies()
    sign_in(page, newcomer, live_server)
    visit(page, live_server.url + reverse("accounts:2fa_setup"), problems)
    assert problems == {}, "\n".join(f"{where}: {found}" for where, found in problems.items())
