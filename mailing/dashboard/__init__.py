"""The live dashboard's data: `selectors` reads what each server may still
send and how each running mailing goes, `stamp` is the version stamp that
answers a poll when nothing changed (304), and `poll` answers a signed-in
session's poll from its pass in one query, before the request stack."""
