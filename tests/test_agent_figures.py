"""``show_figures``: the charts a cell drew reach a model that takes images, as image blocks.

The Anthropic path goes through the real `anthropic` SDK to the loopback
Messages API, which records what the SDK sent.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from cavelite import CaveLite, CaveUsageError, Runtime
from cavelite.models import AnthropicModel, Message, OpenAIModel, ScriptedModel

DRAW = "```python\nimport matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])\nplt.title('sales')\n```"


@pytest.fixture(scope="module")
def shared() -> Runtime:
    runtime = Runtime(preload=("numpy", "pandas", "matplotlib"), cell_timeout=30)
    yield runtime
    runtime.close()


def test_the_png_goes_to_claude_as_an_image_block(messages_api, shared: Runtime) -> None:
    messages_api.reply(DRAW)
    messages_api.reply("Region b sold more.")
    model = AnthropicModel("claude-test", api_key="k", base_url=messages_api.url, max_backoff_s=0.001)
    with CaveLite(model, runtime=shared, show_figures=True) as agent:
        reply = agent.chat("Chart the sales.")
    assert reply.completed and reply.text == "Region b sold more."
    [figure] = reply.cells[0].result.figures
    blocks = messages_api.requests[1].body["messages"][-1]["content"]
    assert [b["type"] for b in blocks] == ["text", "image"]
    assert "[figure 1] 640x480 PNG" in blocks[0]["text"]
    source = blocks[1]["source"]
    assert source["type"] == "base64" and source["media_type"] == "image/png"
    data = base64.b64decode(source["data"])
    assert data == figure.data
    assert PILImage.open(io.BytesIO(data)).size == (640, 480)
    assert "cache_control" in blocks[-1]  # the newest block still carries the cache mark


def test_without_show_figures_the_model_reads_only_that_a_figure_exists(shared: Runtime) -> None:
    model = ScriptedModel([DRAW, "done"])
    with CaveLite(model, runtime=shared) as agent:
        reply = agent.chat("Chart it.")
    assert len(reply.cells[0].result.figures) == 1
    observation = model.calls[1].messages[-1]
    assert observation.images == ()
    assert "[figure 1] 640x480 PNG" in observation.content
    assert "iVBOR" not in observation.content  # no base64 PNG in the text


def test_images_survive_the_history_round_trip(shared: Runtime) -> None:
    model = ScriptedModel([DRAW, "done"])
    with CaveLite(model, runtime=shared, show_figures=True) as agent:
        agent.chat("Chart it.")
        records, history = agent.history_records(), agent.history
    [message] = [m for m in history if m.images]
    assert message.images[0].data.startswith(b"\x89PNG")
    with CaveLite(ScriptedModel(["ok"]), runtime=shared, history=records) as resumed:
        assert resumed.history == history  # images included, byte for byte
    with pytest.raises(CaveUsageError, match="base64"):
        Message.from_dict({"role": "user", "content": "x", "images": [{"mime_type": "image/png",
                                                                        "data": "not base64!"}]})


def test_show_figures_needs_a_model_that_takes_images(shared: Runtime) -> None:
    model = OpenAIModel("local", base_url="http://127.0.0.1:9/v1", api_key="x")
    with pytest.raises(CaveUsageError, match="takes images"):
        CaveLite(model, runtime=shared, show_figures=True)
    assert shared.execute("1 + 1").value_repr == "2"
