"""Who is asking: each host's way of turning a request into an identity.

``kernel.py``: the kernel token of the server extension (Jupyter's own users
come from Jupyter); ``tokens.py``: the service's tokens file. Nothing is
imported here, so the service never loads jupyter_server.
"""
