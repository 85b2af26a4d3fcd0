"""One reader per document format, all behind `autotag.extraction.extract`.

Each reader takes the object's bytes and an `ExtractionBudget`, and returns a `Content`
or raises `Refused` with the reason an operator will read on the document's row.
"""
