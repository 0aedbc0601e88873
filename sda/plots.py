"""Plotting helpers, drawn off-screen on matplotlib's Agg canvas (no display, no pyplot)."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter


def plot_curves(curves, path, xlabel, ylabel, title=None, log_y=False, log_x=False):
    """Save one line per entry of ``curves`` (``{label: (xs, ys)}``) as a PNG at ``path``."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for label, (xs, ys) in curves.items():
        axes.plot(xs, ys, marker=".", markersize=4, label=label)
    if log_x:
        axes.set_xscale("log")
    if log_y:
        axes.set_yscale("log")
        # plain numbers (2, 5, 10) read better than powers of ten for error rates
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axes.yaxis.set_major_formatter(plain)
        low, high = min(min(ys) for _, ys in curves.values()), max(max(ys) for _, ys in curves.values())
        if 0 < low and high < 10 * low:  # within one decade the minor ticks are the only labels
            axes.yaxis.set_minor_formatter(plain)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)
