"""`api_key=`: the client authenticates to a service with SPLADE_API_KEY (in-process app, real Searcher).
The sync `Client` builds its headers with the same `request_headers`."""
from __future__ import annotations

import httpx
import pytest

from service.app import create_app
from splade_client import AsyncClient, AuthenticationError
from tests.service.conftest import serve_in_process

KEY = "client-test-key-42"
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def keyed_searcher(small_index_dir, default_model_dir):
    from engine import Searcher
    from models.runtime import RuntimeOptions

    searcher = Searcher.from_paths(small_index_dir, default_model_dir,
                                   RuntimeOptions(device="cpu", intra_op_threads=1), max_query_terms=64)
    searcher.warm_up()
    return searcher


async def test_api_key_is_sent_as_bearer_and_a_missing_one_raises_authentication_error(
    keyed_searcher, small_index_dir, default_model_dir
):
    from service.settings import Settings

    settings = Settings(index_dir=small_index_dir, model_dir=default_model_dir, device="cpu", api_key=KEY)
    app = create_app(settings, searcher=keyed_searcher)
    async with serve_in_process(app):  # runs the lifespan (loads, warms) for the clients below
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://service.test", api_key=KEY, transport=transport) as client:
            result = await client.search("vitamin d deficiency", k=3)
        async with AsyncClient("http://service.test", transport=transport) as anonymous:
            with pytest.raises(AuthenticationError) as refused:
                await anonymous.search("vitamin d deficiency", k=3)
        async with AsyncClient("http://service.test", api_key="wrong", transport=transport) as wrong:
            with pytest.raises(AuthenticationError):
                await wrong.search_batch(["p53"])
    assert len(result.hits) == 3
    assert refused.value.status_code == 401 and refused.value.attempts == 1  # never retried
