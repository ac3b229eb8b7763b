from typing import Any

import httpx


async def walk_thread(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, *, limit: int = 200
) -> tuple[list[dict[str, Any]], list[int]]:
    """Reads a thread as a screen does: the newest page first, then older pages prepended.
    Returns (every message oldest first, the page sizes in the order they were read)."""
    thread: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=params, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        page = body["items"]
        stamps = [(m["created_at"], m["id"]) for m in page]
        assert stamps == sorted(stamps), "oldest first within a page"
        if thread and page:
            assert stamps[-1] < (thread[0]["created_at"], thread[0]["id"]), "each page is older than the last"
        thread = page + thread
        sizes.append(len(page))
        cursor = body["next_cursor"]
        if not cursor:
            return thread, sizes
