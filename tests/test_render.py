from countlib.tasks import HELPER_TOKENS, get_task, real_length
from countlib.tasks.render import example_html, parts, short_example, task_html


def test_an_example_is_inputs_over_labels_with_unscored_positions_dotted():
    html = example_html((["3", "a", "a"], ["-1", "4", "5"]), caption="shifted start")
    assert "<caption>shifted start</caption>" in html
    assert "<tr><th>input</th><td>3</td><td>a</td><td>a</td></tr>" in html
    assert '<tr><th>label</th><td style="color:#9e9e9e">·</td><td>4</td><td>5</td></tr>' in html


def test_helper_tokens_are_shaded_and_escaped():
    helper = sorted(HELPER_TOKENS)[0]
    html = example_html(([helper, "a"], ["-1", "1"]))
    assert (
        f'<td style="background:#eeeeee">{helper.replace("<", "&lt;").replace(">", "&gt;")}' in html
    )


def test_long_examples_keep_both_ends():
    tokens = [str(i) for i in range(30)]
    html = example_html((tokens, tokens))
    row = html.split("<th>input</th>")[1].split("</tr>")[0]
    assert row.count("<td") == 14 + 1 + 6
    assert '<td>13</td><td title="10 positions left out">…</td><td>24</td>' in row


def test_the_shown_example_is_a_real_training_example_of_readable_length():
    task = get_task("mod10")
    example = short_example(task, seed=3)
    task.check(example)
    assert real_length(example[0]) == 16
    assert example[1][9:12] == ["10", "1", "2"]  # the modulus wraps within the shown example


def test_a_mixture_shows_its_main_task_and_each_auxiliary():
    task = get_task("vanilla_succession")
    assert [p.name for p in parts(task)] == [task.main.name, *(a.name for a, _ in task.auxiliaries)]
    html = task_html(task)
    assert html.count('class="countlib-example"') == 2 and "(auxiliary)" in html
    shifted = task_html(get_task("shifted_start"))
    assert "scored as extrapolation from position 51" in shifted
