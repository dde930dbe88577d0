"""/api/: the schema, its reference page, and version 1 of the API. Every
view here answers to a key, not to a session: none needs a login."""

import uuid

from django.contrib.auth.decorators import login_not_required
from django.urls import path, re_path, register_converter

from . import schema  # registers the authentication's description
from .problems import not_found
from .views import contacts, feeds, lists, mailings, servers, suppressions, templates

app_name = "api"


class AnyCaseUUID:
    """An id in a path, in small letters or capitals: UUIDs are read
    whatever their case (RFC 9562), as the bodies' ids are. Django's own
    `uuid` takes small letters only, and a client that keeps ids in
    capitals (SQL Server, Delphi) got 404 for its own objects."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: uuid.UUID | str) -> str:
        return str(value)


register_converter(AnyCaseUUID, "anyuuid")


def _key(view):
    return login_not_required(view.as_view())


urlpatterns = [
    path("schema/", _key(schema.SchemaView), name="schema"),
    # Swagger UI from our static files (drf-spectacular-sidecar) and its
    # set-up script from a URL of its own: nothing inline, for the CSP.
    path(
        "docs/",
        login_not_required(schema.DocsView.as_view(url_name="api:schema", template_name="api/docs.html")),
        name="docs",
    ),
    path("v1/contacts/", _key(contacts.ContactCollection), name="contacts"),
    path("v1/contacts/bulk/", _key(contacts.ContactBulk), name="contacts_bulk"),
    path("v1/contacts/<anyuuid:public_id>/", _key(contacts.ContactItem), name="contact"),
    path("v1/lists/", _key(lists.ListCollection), name="lists"),
    path("v1/lists/<anyuuid:public_id>/", _key(lists.ListItem), name="list"),
    path("v1/suppressions/", _key(suppressions.SuppressionCollection), name="suppressions"),
    # An address holds "/" where RFC 5321 allows it (the local part): Django's
    # `path` takes it whole, where `str` cut the path there.
    path("v1/suppressions/<path:email>/", _key(suppressions.SuppressionItem), name="suppression"),
    path("v1/templates/", _key(templates.TemplateCollection), name="templates"),
    path("v1/templates/<anyuuid:public_id>/", _key(templates.TemplateItem), name="template"),
    path("v1/mailings/", _key(mailings.MailingCollection), name="mailings"),
    path("v1/mailings/<anyuuid:public_id>/", _key(mailings.MailingItem), name="mailing"),
    path("v1/mailings/<anyuuid:public_id>/<slug:action>/", _key(mailings.MailingAction), name="mailing_action"),
    path("v1/servers/", _key(servers.ServerCollection), name="servers"),
    path("v1/servers/<anyuuid:public_id>/", _key(servers.ServerItem), name="server"),
    path("v1/bounces/", _key(feeds.BounceFeed), name="bounces"),
    path("v1/unsubscribes/", _key(feeds.UnsubscribeFeed), name="unsubscribes"),
    # Anything else under v1 (a malformed id too): a problem, not a page.
    path("v1/<path:rest>", login_not_required(not_found), name="not_found"),
    # And under /api/ (another version, a forgotten v1/): the reference
    # page and the schema without their slash still redirect (APPEND_SLASH).
    re_path(r"^(?!docs$|schema$)(?P<rest>.*)$", login_not_required(not_found), name="not_found_outside_v1"),
]
