"""The ceiling: the bare frameworks' trivial JSON endpoint, served the way doorstep serves.

    python -m bench.ceiling {starlette,fastapi,fastapi-sync} --port PORT

`POST /ok` (GET too) answers `{"ok": true}` without reading the body. The benchmark sends
it the same request an entry is (method, headers, body size), so the gap between this and
the service is what doorstep itself costs. uvicorn runs exactly as `doorstep serve` runs
it (`doorstep.server.serve`): one process, `log_level="warning"`, `access_log=False`.

`fastapi-sync` is the same FastAPI endpoint declared with `def` instead of `async def`:
FastAPI then runs it in the thread pool. It is shown for information (it is not the
ceiling; doorstep's entry route is an `async` endpoint that hands its work to the writer
thread).
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

APPS = ("starlette", "fastapi", "fastapi-sync")


def starlette_app() -> Starlette:
    async def ok(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/ok", ok, methods=["GET", "POST"])])


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/ok", methods=["GET", "POST"])
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    return app


def fastapi_sync_app() -> FastAPI:
    app = FastAPI()

    @app.api_route("/ok", methods=["GET", "POST"])
    def ok() -> dict[str, bool]:
        return {"ok": True}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("app", choices=APPS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    factory = {
        "starlette": starlette_app,
        "fastapi": fastapi_app,
        "fastapi-sync": fastapi_sync_app,
    }[args.app]
    uvicorn.run(factory(), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
