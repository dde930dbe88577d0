"""Bounces: the reports that come back to a tenant's bounce mailbox.

- parser: what one message says (a delivery report, hard or soft, for
  which recipient and why; a complaint; an auto-reply; or mail a person
  wrote);
- readers: which mailboxes to read and one reading's course, over IMAP
  (imap) or POP3 (pop3), with what both share (reading: the lease, limits);
- matching: which of the tenant's letters a report is about;
- services: recording a report once and applying it (bounced, suppressed);
- selectors: the reads the pages need."""
