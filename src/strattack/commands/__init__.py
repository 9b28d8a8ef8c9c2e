"""One library function per CLI command; the layer between viz and the CLI.

Each module here does the whole work of one ``strattack`` command (``report``, ``explain``,
``demo``, ``train``) and returns what the command prints and the files it wrote, so the CLI only
parses options and prints. Errors are the library's typed ones (:mod:`strattack.errors`).
"""
