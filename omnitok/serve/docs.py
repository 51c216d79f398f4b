"""GET /docs: Swagger UI for the API, with every file it loads served by the server itself
(/docs/assets/...), so the page works where nothing outside the host can be reached. The files
are Swagger UI's release bundle as the fastapi-offline package ships it (a dependency of the
serve extra); the page is FastAPI's own (get_swagger_ui_html) pointed at them, with Swagger UI's
online validator off (it would send the schema to validator.swagger.io)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

PATH = "/docs"
ASSETS = PATH + "/assets"

# name -> media type: the only files served
FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


def asset_dir() -> Path | None:
    """The directory holding Swagger UI's files (fastapi-offline's static/), or None."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    d = Path(fastapi_offline.__file__).parent / "static"
    return d if all((d / name).is_file() for name in FILES) else None


@router.get(PATH)
async def docs(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    if asset_dir() is None:
        return HTMLResponse(
            "<!doctype html><title>omnitok API</title><p>Swagger UI's files are not installed here "
            "(pip install 'omnitok[serve]'). The schema: "
            f'<a href="{root}/openapi.json">{root}/openapi.json</a></p>',
        )
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API",
        swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(ASSETS + "/{name}")
async def asset(name: str) -> FileResponse:
    d = asset_dir()
    if name not in FILES or d is None:
        from starlette.exceptions import HTTPException

        raise HTTPException(404, f"no such file under {ASSETS}")
    return FileResponse(d / name, media_type=FILES[name], headers={"Cache-Control": "public, max-age=86400"})
