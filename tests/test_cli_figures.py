"""The `cavelite` command saves the figures cells draw in a folder it names, and lists them."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from cavelite.cli import EXIT_DATA, EXIT_OK, main

CHART = ("```python\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 4])\nplt.show()\n"
         "plt.figure(figsize=(3, 2))\nplt.bar(['a'], [1])\n```")


def test_run_json_lists_the_saved_figures(openai_api, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default folder is ./cavelite-figures
    openai_api.reply(CHART)
    openai_api.reply("Two charts.")
    code = main(["run", "Chart it", "--json", "--base-url", openai_api.url])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    record = json.loads(out)
    [cell] = record["cells"]
    first, second = cell["figures"]
    assert (first["width"], first["height"], second["width"], second["height"]) == (640, 480, 300, 200)
    assert first["mime_type"] == "image/png" and first["bytes"] > 1000
    for item in (first, second):
        path = Path(item["path"])
        assert path.parent.parent == tmp_path / "cavelite-figures" and path.name.startswith("step1-")
        with Image.open(path) as image:
            assert image.size == (item["width"], item["height"])
        assert path.stat().st_size == item["bytes"]
    assert record["figure_errors"] == []


def test_run_prints_where_each_figure_went(openai_api, tmp_path: Path, capsys) -> None:
    openai_api.reply(CHART)
    openai_api.reply("Done.")
    folder = tmp_path / "charts"
    code = main(["run", "Chart it", "--base-url", openai_api.url, "--figures", str(folder)])
    out, err = capsys.readouterr()
    assert code == EXIT_OK, err
    [session] = list(folder.iterdir())
    saved = sorted(p.name for p in session.iterdir())
    assert saved == ["step1-1.png", "step1-2.png"]
    flat = " ".join(err.split())  # the display may wrap long paths
    assert "figure 1: 640x480 PNG" in flat and "figure 2: 300x200 PNG" in flat
    assert "saved to" in flat and "step1-2.png" in flat
    assert out.strip() == "Done."


def test_a_folder_that_cannot_be_written_is_a_data_error(openai_api, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    openai_api.reply(CHART)
    openai_api.reply("Done.")
    code = main(["run", "Chart it", "--json", "--base-url", openai_api.url, "--figures", str(blocker)])
    out, _ = capsys.readouterr()
    record = json.loads(out)
    assert code == EXIT_DATA
    assert record["answer"] == "Done."  # the chat itself went on
    assert [f["path"] for f in record["cells"][0]["figures"]] == [None, None]
    errors = record["figure_errors"]
    assert len(errors) == 2 and "cannot save figure 1 of step 1" in errors[0]
    assert blocker.read_text() == "a file where the folder should be"
