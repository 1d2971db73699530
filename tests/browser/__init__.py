"""Browser tests: Playwright driving Debian's headless Chromium against a live optscribe server.

A package (not a bare directory) so that pytest puts ``tests/`` on ``sys.path`` (the shared
``llm_stub`` and ``shared_models`` modules import as elsewhere) and the modules here import as
``browser.test_*``, free to share a basename with a module in ``tests/``.
"""
