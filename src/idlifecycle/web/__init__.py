"""The web pages: the SIRO's approval page and the staff request form."""
