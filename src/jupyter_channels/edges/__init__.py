"""The edges around the hub: thin I/O that turns requests into hub calls.

``socket.py`` and ``rest.py`` hold what every host shares (the WebSocket
endpoint and the REST API, written against Tornado alone); each host adds only
how a request is authenticated and where its hub comes from: ``jupyter.py``
(the server extension) and ``service.py`` (``jupyter channels serve``).
"""
