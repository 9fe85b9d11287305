"""Tables as report pages (spectral_reach.report_html): every row and column, numbers readable."""

import numpy as np
import pandas as pd

from spectral_reach.report_html import table_page


def test_a_table_page_holds_every_cell_readably():
    df = pd.DataFrame({"size": ["s", "m"], "params": [39504.0, 92320.0], "chi_pos": [1.234567e-07, np.nan],
                       "seeds": np.array([2, 2]), "note": ["a<b", None]})  # fmt: skip
    page = table_page(df, "Sizes & more")
    assert "<title>Sizes &amp; more</title>" in page and "<h2>Sizes &amp; more</h2>" in page
    assert page.count("<tr>") == 3 and page.count("<th>") == 5
    assert '<td class="n">39504</td>' in page and '<td class="n">1.235e-07</td>' in page
    assert '<td class="n">2</td>' in page and "<td>a&lt;b</td>" in page
    assert page.count("<td></td>") == 2  # the missing chi_pos and note
