"""The engine: an IPython kernel that can also call serialized functions.

Importing this package stays cheap; the kernel itself is in
:mod:`pxmagic.engine.kernel`.  The small functions that views send to
engines by reference are :mod:`pxmagic.engine_calls`, which both sides import.
"""
