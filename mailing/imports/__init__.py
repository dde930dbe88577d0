"""CSV import of contacts.

The upload is stored under IMPORTS_DIR with a random name and inspected
(encoding, delimiter, header row); the user maps the columns; a Celery task
then streams the file in batches. Each batch is one transaction, so a row is
imported whole or not at all, and every bad row becomes an ImportRejection
with the line it starts on (the header is line 1).

Hostile files are bounded: the file size, the length of a physical line, of
a field and of a row, and the number of columns. Lines are read with a
length limit and decoded one by one, which gives the byte offset of an
invalid byte and keeps memory flat however large the file is.

The modules: `services` (upload, reading again in the encoding the user
chose, start, discard), `inspection` (the header, delimiter and preview of
a stored file), `detection` (its encoding: UTF-8, UTF-16, and `code_pages`
for the 8-bit ones, weighed by the table in `letter_pairs`), `mapping`
(which column goes where), `runner` (the Celery task's streaming of the
rows, and rows sent through the API), `uploads` (where a request may carry
a file), `limits` (the bounds above)."""
