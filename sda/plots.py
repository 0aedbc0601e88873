"""Plotting helpers, drawn off-screen on matplotlib's Agg canvas (no display, no pyplot)."""

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter


def _two_and_five(value, _):
    leading = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if leading in (2, 5) else ""


def plot_curves(curves, path, xlabel, ylabel, title=None, log_y=False, log_x=False):
    """Save one line per entry of ``curves`` (``{label: (xs, ys)}``) as a PNG at ``path``.

    Parameters
    ----------
    curves : dict of str to (sequence of float, sequence of float)
        ``{label: (xs, ys)}``, one line each, in the legend under its label.
    path : str or pathlib.Path
        Where to write the PNG.
    xlabel, ylabel : str
        The axes' labels.
    title : str, optional
        The figure's title.
    log_y, log_x : bool
        Logarithmic axes; a log y axis labels plain numbers (2, 5, 10), not powers of ten.
    """
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
        low = min(min(ys) for _, ys in curves.values())
        high = max(max(ys) for _, ys in curves.values())
        # Over a narrow range label the 2s and 5s between powers of ten too;
        # over a wide one that would crowd the axis.
        narrow = 0 < low and high <= 100 * low
        axes.yaxis.set_minor_formatter(FuncFormatter(_two_and_five) if narrow else NullFormatter())
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)


def plot_error_bars(curves, path, xlabel, ylabel, title=None, log_x=False):
    """Save one line with error bars per entry of ``curves`` as a PNG at ``path``.

    Parameters
    ----------
    curves : dict of str to (sequence of float, sequence of float, sequence of float)
        ``{label: (xs, means, spreads)}``, the bars reaching ``spread`` above and below.
    path : str or pathlib.Path
        Where to write the PNG.
    xlabel, ylabel : str
        The axes' labels.
    title : str, optional
        The figure's title.
    log_x : bool
        A logarithmic x axis.
    """
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    for label, (xs, means, spreads) in curves.items():
        axes.errorbar(xs, means, yerr=spreads, marker=".", markersize=5, capsize=3, label=label)
    if log_x:
        axes.set_xscale("log")
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=120)
