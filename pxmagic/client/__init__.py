"""The client side: Client, views, AsyncResult."""
from .asyncresult import AsyncResult
from .balanced import AsyncMapResult, LoadBalancedView
from .client import Client
from .view import DirectView

__all__ = ["AsyncMapResult", "AsyncResult", "Client", "DirectView", "LoadBalancedView"]
