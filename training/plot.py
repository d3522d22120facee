"""The loss-curve plot stored in each bundle as `loss.png`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers, in CI or in containers
import matplotlib.pyplot as plt


def plot_loss(histories: list[dict[str, list[float]]], validation_label: str, path: Path) -> None:
    """Train and validation loss per epoch, one pair of curves per ensemble member."""
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    for member, history in enumerate(histories):
        epochs = range(1, len(history["loss"]) + 1)
        suffix = f" (member {member})" if len(histories) > 1 else ""
        (line,) = axes.plot(epochs, history["loss"], marker="o", label=f"train{suffix}")
        if "val_loss" in history:
            axes.plot(
                epochs,
                history["val_loss"],
                marker="o",
                linestyle="--",
                color=line.get_color(),
                label=f"{validation_label}{suffix}",
            )
    axes.set(title="Model loss", xlabel="epoch", ylabel="binary cross-entropy")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
