"""Webhook endpoints (an organisation setting), the deliveries of events to
them, and each attempt of a delivery (the log the settings page shows)."""

import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from servers import crypto

from ..models import Tenant


class WebhookEndpoint(models.Model):
    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints", verbose_name=_("organisation")
    )
    # Checked by targets, not URLValidator: a LAN name (self-hosted) has no TLD.
    url = models.CharField(_("URL"), max_length=500)
    description = models.CharField(_("description"), max_length=150, blank=True)
    events = models.JSONField(_("events"), default=list)  # event type names (accounts.webhooks.events.TYPES)
    # The signing secret, encrypted like the SMTP passwords (servers.crypto):
    # we must replay it to sign, so it cannot be hashed. Shown once, never again.
    secret_encrypted = models.TextField(_("signing secret (encrypted)"))
    enabled = models.BooleanField(_("enabled"), default=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")

    def __str__(self) -> str:
        return self.url

    def clean(self) -> None:
        from . import events, targets

        super().clean()
        errors: dict[str, list] = {}
        try:
            targets.validate_for_save(self.url)
        except ValidationError as exc:
            errors["url"] = exc.messages
        if not self.events or any(e not in events.TYPES for e in self.events):
            errors["events"] = [_("Choose at least one event.")]
        if errors:
            raise ValidationError(errors)

    def secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret)


class WebhookDelivery(models.Model):
    """One event for one endpoint: the event's id, type, time and data (the
    body is built from them on each attempt), and where its retries stand."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Delivered")
        FAILED = "failed", _("Failed")

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", verbose_name=_("endpoint"), db_index=False
    )
    event_id = models.UUIDField(_("event ID"))  # the same for every endpoint the event went to
    event_type = models.CharField(_("event type"), max_length=40)
    created = models.DateTimeField(_("event time"))  # when the event happened
    data = models.JSONField(_("data"), default=dict)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True, default=timezone.now)
    # A worker sending it holds it until then (a conditional UPDATE claims
    # it), so the task and the beat sweep never send one attempt twice.
    claimed_until = models.DateTimeField(_("claimed until"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        indexes = [
            models.Index(fields=["next_attempt_at"], name="webhook_delivery_due_idx", condition=Q(status="pending")),
            models.Index(fields=["endpoint", "-created"], name="webhook_delivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log", verbose_name=_("delivery")
    )
    number = models.PositiveSmallIntegerField(_("attempt"))
    at = models.DateTimeField(_("time"), default=timezone.now)
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    error = models.CharField(_("error"), max_length=300, blank=True)
    response_body = models.TextField(_("response"), blank=True)  # the start of it (WEBHOOK_RESPONSE_CHARS)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")

    def __str__(self) -> str:
        return f"#{self.number} {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookOnce(models.Model):
    """An event that is emitted at most once in a while (a server's limit
    reached: once per window, not once per batch that finds it spent)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", verbose_name=_("organisation"))
    key = models.CharField(_("key"), max_length=150, unique=True)
    until = models.DateTimeField(_("until"))

    class Meta:
        verbose_name = _("event told once")
        verbose_name_plural = _("events told once")

    def __str__(self) -> str:
        return self.key
