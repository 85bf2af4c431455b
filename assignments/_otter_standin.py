"""``otter`` inside the grading sandbox (``build.py grade`` installs it as the package ``otter``).

A submission's own ``import otter`` and ``grader = otter.Notebook(...)`` must run there, but
nothing otter does in the student's kernel can count: the grader runs every test outside the
sandbox and decides the score there. So the sandbox gets this stand-in instead of the real
package (whose import, with pandas, took 2 of a submission's 8 CPU-seconds): ``Notebook``
takes any arguments and its methods do nothing. Students' own runs (Jupyter, Colab, otter's
Gradescope runner) use the real otter-grader.
"""

__version__ = "grading-sandbox stand-in"


class Notebook:
    """Accepts otter's arguments; ``check``, ``check_all``, ``export`` ... do nothing here."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    @classmethod
    def init_grading_mode(cls, *args, **kwargs) -> None:
        pass

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: None
