# Django's Vietnamese formats group no digits (no NUMBER_GROUPING): a
# Vietnamese reader writes 12.345 letters, as the separators Django sets say.
# The rest of Django's Vietnamese formats stay as they are.
NUMBER_GROUPING = 3
