"""One module per sub-command of ``visionnets``: ``add_arguments(parser)`` and ``run(args) -> int``."""

# name -> (module, one-line help); the order is the order of ``visionnets --help``.
COMMANDS = {
    "demo": ("visionnets.commands.demo", "train a small convnet on the bundled digits (the main job)"),
    "train": ("visionnets.commands.train", "train from a recipe, or resume a run"),
    "eval": ("visionnets.commands.eval", "evaluate a run directory on a split"),
    "predict": ("visionnets.commands.predict", "labels and probabilities of a run for new images or arrays"),
    "export": ("visionnets.commands.export", "a run's model as an ONNX or TorchScript file"),
    "recipes": ("visionnets.commands.recipes", "list the bundled recipes, or print one"),
    "show": ("visionnets.commands.show", "pictures of what a trained net learned (filters, top images, optimal input)"),
    "plan": ("visionnets.commands.plan", "parameters, memory and FLOPs of a recipe's model, without allocating it"),
    "compare": ("visionnets.commands.compare", "the tutorial's MNIST table: our nets beside boosting, k-NN, SVM"),
    "coates": ("visionnets.commands.coates", "learn features from CIFAR-10 patches and classify (Coates et al. 2011)"),
    "data": ("visionnets.commands.data", "list datasets and check their files against known SHA-256 sums"),
}
