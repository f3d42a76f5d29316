"""remit over HTTP/JSON: the OpenID AuthZEN Authorization API 1.0 (a first cut).

:mod:`.mapping` turns an AuthZEN request into the same ``AuthoriseRequest`` the gRPC API
takes (so one set of checks, one conversion and one use case serve both) and the answer
back into AuthZEN's ``decision`` and ``context``; :mod:`.app` is the Starlette application
(routes, errors, body limits, the caller); :mod:`.server` runs it on uvicorn beside gRPC.
"""
