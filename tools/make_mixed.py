"""Write jobs/data/mixed.csv: 300 made-up customers with text categories, gaps and a string
label, for the mixed-data example job (jobs/mixed.toml). Deterministic: the same bytes on
every run (numpy's seeded generator, fixed formatting).

    python tools/make_mixed.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROWS = 300
COLORS = ["red", "green", "blue", "black"]
CITIES = ["Lyon", "Porto", "Oslo", "Turin", "Ghent"]


def rows(seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    out = [["age", "income", "score", "color", "city", "label"]]
    for _ in range(ROWS):
        age = int(rng.integers(18, 80))
        income = float(np.round(rng.lognormal(10.3, 0.5), 2))
        score = float(np.round(rng.normal(50, 15), 1))
        color = COLORS[int(rng.integers(len(COLORS)))]
        city = CITIES[int(rng.integers(len(CITIES)))]
        # the label depends on numbers and categories, with noise
        z = (0.04 * (age - 45) + 0.00004 * (income - 30000) + 0.03 * (score - 50)
             + (0.8 if color in ("red", "black") else -0.5) + (0.6 if city == "Oslo" else 0.0)
             + rng.normal(0, 0.8))
        label = "yes" if z > 0 else "no"
        cells = [str(age), f"{income:.2f}", f"{score:.1f}", color, city, label]
        for i in range(5):  # gaps: about 8% of the feature cells are empty
            if rng.random() < 0.08:
                cells[i] = ""
        out.append(cells)
    return out


def main() -> None:
    path = Path(__file__).resolve().parent.parent / "jobs" / "data" / "mixed.csv"
    path.write_text("".join(",".join(r) + "\n" for r in rows()))
    print(f"{path}: {ROWS} rows")


if __name__ == "__main__":
    main()
