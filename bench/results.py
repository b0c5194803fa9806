"""bench/RESULTS.md holds one section per benchmark command; each command rewrites only its own."""

from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
SITE = "# Benchmark: the site beside the Flask tutorial"
IMAGES = "# Benchmark: eight hostile images at once (make bench-images)"
HISTORY_AT_SCALE = "# Benchmark: the job history at a million rows"
ORDER = (SITE, IMAGES, HISTORY_AT_SCALE)


def write_section(heading: str, text: str, path: Path = RESULTS) -> None:
    """Put `text` (which starts with `heading`) in place of that section, keeping the others in ORDER."""
    sections = read_sections(path.read_text() if path.exists() else "")
    sections[heading] = text.strip("\n")
    path.write_text("\n\n".join(sections[name] for name in ORDER if name in sections) + "\n")


def read_sections(text: str) -> dict[str, str]:
    """Each section of RESULTS.md by its heading: from the heading's line to the next section's."""
    starts = sorted((text.index(name), name) for name in ORDER if name in text)
    ends = [start for start, _ in starts[1:]] + [len(text)]
    return {name: text[start:end].strip("\n") for (start, name), end in zip(starts, ends, strict=True)}
