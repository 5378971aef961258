"""Reports for the SIRO and the technician: the annual access-review workbook, its CSV copies, the
decisions read back from it, and the summary mailed after each nightly run."""
