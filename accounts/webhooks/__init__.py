"""Signed webhooks: an organisation's endpoints receive its events.

1. `events.emit()` is called where something happens (a bounce applied, an
   unsubscribe, a mailing moving, a server failing or spending a limit, an
   import ending). When no enabled endpoint of the tenant wants that event
   type it costs one cache read and nothing else; otherwise, after the
   caller's transaction commits, one delivery per endpoint is stored and a
   task is queued. It never raises into the caller.
2. `delivery.deliver()` (the `webhooks` queue) claims a delivery, checks the
   URL against the SSRF guard again, POSTs the signed JSON body to the
   checked address (pinned, redirects not followed) and logs the attempt.
3. A failed attempt is retried with exponential backoff for a day
   (`delivery.next_attempt_at`); beat's sweep sends the due ones, so a lost
   task costs a minute, never the event.

Modules: `models` (endpoints, deliveries, attempts), `events` (types and
emitting), `signing`, `client` (the pinned HTTP POST), `targets` (which
URLs are allowed), `delivery`, `services` (endpoint writes), `forms`,
`views`, `urls`, `tasks`. What each event carries is built where it
happens: `mailing/events.py`, `servers/events.py`."""
