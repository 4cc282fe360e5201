"""The live dashboard a hub serves with ``--dashboard`` (``pxmagic[dashboard]``, Bokeh).

Bokeh, which Dask's dashboard also uses, ships its JavaScript inside its
wheel, so the page needs nothing from a CDN, and its server runs on the
hub's own asyncio loop: no process or thread more.  ``page`` builds one
browser session's document from the hub's status and task history,
``server`` serves it with a token and ``/metrics``.
"""

#: what a user without the extra is told
NEEDS_BOKEH = "the dashboard needs Bokeh: pip install 'pxmagic[dashboard]'"
