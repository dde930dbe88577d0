from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path, reverse_lazy

from .forms import PasswordResetForm
from .views import api_keys, auth, invitations, language, team, tenants, two_factor
from .views.limited import PasswordResetView, resend_limited, signup_limited

app_name = "accounts"


def _public(view):
    return login_not_required(view)


reset_done = reverse_lazy("accounts:password_reset_done")
reset_complete = reverse_lazy("accounts:password_reset_complete")

urlpatterns = [
    # The platform mail limits in front (accounts.views.limited).
    path("signup/", signup_limited(auth.signup), name="signup"),
    path("signup/sent/", auth.signup_sent, name="signup_sent"),
    path("login/", auth.login_view, name="login"),
    path("login/code/", auth.login_otp, name="login_otp"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("verify/", auth.verify_pending, name="verify_pending"),
    path("verify/resend/", resend_limited(auth.verify_resend), name="verify_resend"),
    path("verify/<str:token>/", auth.verify_email, name="verify_email"),
    path("two-factor/setup/", two_factor.two_factor_setup, name="2fa_setup"),
    path("two-factor/recovery-codes/", two_factor.recovery_codes, name="recovery_codes"),
    path("security/", two_factor.security, name="security"),
    path("security/password/", two_factor.password_change, name="password_change"),
    path("security/recovery-codes/", two_factor.recovery_codes_new, name="recovery_codes_new"),
    path("security/reset-two-factor/", two_factor.two_factor_reset, name="2fa_reset"),
    path(
        "password-reset/",
        _public(
            PasswordResetView.as_view(
                form_class=PasswordResetForm,
                template_name="accounts/password_reset.html",
                email_template_name="emails/password_reset/body.txt",
                html_email_template_name="emails/password_reset/body.html",
                subject_template_name="emails/password_reset/subject.txt",
                success_url=reset_done,
            )
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        _public(auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_done.html")),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        _public(
            auth.PasswordResetConfirmView.as_view(
                template_name="accounts/password_reset_confirm.html", success_url=reset_complete
            )
        ),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        _public(auth_views.PasswordResetCompleteView.as_view(template_name="accounts/password_reset_complete.html")),
        name="password_reset_complete",
    ),
    path("invitations/<str:token>/", invitations.invitation, name="invitation"),
    path("team/", team.team, name="team"),
    path("team/leave/", team.team_leave, name="team_leave"),
    path("team/members/<uuid:public_id>/role/", team.member_role, name="member_role"),
    path("team/members/<uuid:public_id>/remove/", team.member_remove, name="member_remove"),
    path("team/invitations/<uuid:public_id>/revoke/", team.invitation_revoke, name="invitation_revoke"),
    path("organisation/", tenants.organisation, name="organisation"),
    path("organisation/api-keys/", api_keys.api_key_list, name="api_keys"),
    path("organisation/api-keys/<uuid:public_id>/revoke/", api_keys.api_key_revoke, name="api_key_revoke"),
    path("organisation/webhooks/", include("accounts.webhooks.urls")),
    path("organisations/new/", tenants.tenant_new, name="tenant_new"),
    path("organisations/switch/", tenants.tenant_switch, name="tenant_switch"),
    path("language/", language.language_set, name="language_set"),
    path("organisations/language/", language.tenant_language, name="tenant_language"),
]
