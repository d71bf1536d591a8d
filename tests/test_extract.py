"""Code extraction: which block runs, and what the model is told about the rest."""

from __future__ import annotations

import pytest

from cavelite.extract import CodeWatcher, extract_code

FENCE = "```"


def block(code: str, lang: str = "python") -> str:
    return f"{FENCE}{lang}\n{code}\n{FENCE}"


def test_plain_text_is_a_final_answer():
    found = extract_code("Revenue grew 12% in the North region.")
    assert found.code is None
    assert found.is_final_answer
    assert not found.unterminated


def test_first_python_block_is_the_code():
    code = "x = 1\nprint(x)"
    found = extract_code(f"Let me look.\n{block(code)}\nThen more text.")
    assert found.code == "x = 1\nprint(x)"
    assert found.ignored_blocks == 0
    assert not found.is_final_answer


@pytest.mark.parametrize("lang", ["python", "py", "Python", "python3"])
def test_python_language_tags(lang: str):
    assert extract_code(block("y = 2", lang)).code == "y = 2"


def test_non_python_blocks_do_not_run():
    text = f"Output looks like:\n{block('x = 1', 'text')}\nand {block('ls', 'bash')}"
    found = extract_code(text)
    assert found.code is None
    assert found.is_final_answer


def test_a_python_fence_inside_another_block_does_not_run():
    text = f"{FENCE}markdown\n{block('x = 1')}\n{FENCE}\n"
    # A python example quoted inside a markdown block is text, not code to run.
    assert extract_code(text).code is None


def test_backticks_inside_strings_do_not_close_the_block():
    code = "s = \"```\"\nfence = '```python'\nprint(s + fence)"
    assert extract_code(block(code)).code == code


def test_fence_line_inside_a_triple_quoted_string_stays_in_the_code():
    code = 'doc = """\nExample:\n```\nx = 1\n```\n"""\nprint(len(doc))'
    found = extract_code(f"Here:\n{block(code)}\nDone.")
    assert found.code == code


def test_more_blocks_after_the_first_are_counted_not_run():
    text = f"{block('a = 1')}\nand\n{block('b = 2')}\nand\n{block('c = 3', 'py')}"
    found = extract_code(text)
    assert found.code == "a = 1"
    assert found.ignored_blocks == 2


def test_unterminated_block_runs_nothing():
    found = extract_code(f"Trying:\n{FENCE}python\nx = 1\nprint(x)\n")
    assert found.code is None
    assert found.unterminated
    assert not found.is_final_answer


def test_unterminated_second_block_counts_as_ignored():
    found = extract_code(f"{block('a = 1')}\n{FENCE}python\nb = 2\n")
    assert found.code == "a = 1"
    assert found.ignored_blocks == 1


def test_longer_opening_fence_needs_an_equally_long_close():
    text = "````python\nprint('```')\n```\nx = 1\n````"
    assert extract_code(text).code == "print('```')\n```\nx = 1"


def test_indented_fences_up_to_three_spaces():
    assert extract_code("   ```python\nz = 3\n   ```").code == "z = 3"


def test_empty_block_is_code_that_does_nothing():
    assert extract_code(f"{FENCE}python\n{FENCE}").code == ""


def test_watcher_reports_the_block_as_soon_as_it_closes():
    text = f"Thinking...\n{block('total = 40 + 2')}\nNow the rest of a long reply\n"
    watcher = CodeWatcher()
    seen: list[tuple[int, str]] = []
    for i in range(0, len(text), 4):
        code = watcher.feed(text[i : i + 4])
        if code is not None:
            seen.append((i, code))
    assert len(seen) == 1
    position, code = seen[0]
    assert code == "total = 40 + 2"
    assert position < text.index("Now the rest")


def test_watcher_ignores_fence_lookalikes_in_strings():
    code = 'doc = """\n```\n"""'
    text = block(code) + "\n"
    watcher = CodeWatcher()
    found = [c for c in (watcher.feed(ch) for ch in text) if c is not None]
    assert found == [code]


def test_bare_fences_and_unfenced_code_from_small_models() -> None:
    from cavelite.extract import extract_code

    bare = "Let me look.\n```\ntotal = orders['amount'].sum()\nprint(total)\n```"
    assert extract_code(bare).code == "total = orders['amount'].sum()\nprint(total)"
    unfenced = "top = orders.groupby('region')['amount'].sum().idxmax()"
    assert extract_code(unfenced).code == unfenced
    for answer in ("North", "42", "The top region is North.", "```\nNorth\n```", "",
                   "Answer: 42", "Computed: 42\nNote: rounded"):
        assert extract_code(answer).code is None, answer
        assert extract_code(answer).is_final_answer


def test_code_whose_opening_fence_was_forgotten_runs():
    found = extract_code(f"number = number + 15\nnumber\n{FENCE}\n\nThe next message shows [value] 25")
    assert found.code == "number = number + 15\nnumber"
    assert found.end == len(f"number = number + 15\nnumber\n{FENCE}")
    assert extract_code(f"Here is the plan:\n{FENCE}\nsteps\n{FENCE}").code is None  # prose, then a block
