"""One module per sub-command of ``visionnets``: ``add_arguments(parser)`` and ``run(args) -> int``."""

# name -> (module, one-line help); the order is the order of ``visionnets --help``.
COMMANDS = {
    "demo": ("visionnets.commands.demo", "train a small convnet on the bundled digits (the main job)"),
    "train": ("visionnets.commands.train", "train from a recipe, or resume a run"),
    "eval": ("visionnets.commands.eval", "evaluate a run directory on a split"),
    "recipes": ("visionnets.commands.recipes", "list the bundled recipes, or print one"),
}
