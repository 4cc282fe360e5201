"""The engine: an IPython kernel that can also call serialized functions.

Importing this package stays cheap; the kernel itself is in
:mod:`pxmagic.engine.kernel`, and :mod:`pxmagic.engine.ops` holds the small
functions that views send to engines by reference.
"""
