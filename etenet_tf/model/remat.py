"""Gradient checkpointing (rematerialisation) of a functional backbone.

For the backward pass, a frame encoder keeps the activations of every
layer for every frame. At 16 frames x batch 8 that is 128 ImageNet-size
images, and it is what makes end-to-end training run out of memory.
`--remat` trades compute for that memory. The backbone is cut into
segments at tensors that the whole network passes through (a block's
output, a stem pooling layer, a residual sum), and each segment runs under
`keras.remat` (`tf.recompute_grad` on TensorFlow). The forward pass keeps
only each segment's input. The backward pass recomputes one segment's
activations at a time, just before it needs them.

Modes (`REMAT_MODES`):

- `none`: everything is kept, as without this module.
- `blocks`: a checkpoint at every block end of the backbone (the layers
  `EncoderSpec.block_end_pattern` matches, the units of `--finetune_blocks`),
  and every segment is recomputed.
- `planned`: checkpoints chosen to minimise the peak, in the manner of
  Chen et al. 2016 ("Training Deep Nets with Sublinear Memory Cost",
  arXiv 1604.06174). A model of what each layer keeps for its gradient
  (`saved_elements`) drives the choice, and the top segment is not
  recomputed: its activations are the first the backward pass frees, so
  keeping them does not raise the peak. For InceptionV3 at 299 px the
  checkpoints are the stem's two pooling layers and mixed1, 3, 4, 6 and 8.

Layers below the first trainable one (`--finetune_blocks=N`) get no
gradient, so they keep nothing and are never recomputed.

What was measured before this design (TF 2.21, Keras 3.15, CPU, InceptionV3
at 299 px, peak RSS in a fresh process; see the README):

- `keras.RematScope(mode="full")` around the backbone's construction
  fails inside `tf.function`: the Functional model and its BatchNormalization
  layers are called with a keyword argument (`training`), which
  `tf.custom_gradient` accepts only eagerly. Even if it worked, a
  checkpoint per layer keeps each layer's input, which is the previous
  layer's output, so almost nothing would be freed.
- One `keras.remat` around the whole backbone frees nothing (+7%): the
  backward pass rebuilds the whole activation stack at once.
- One `keras.remat` per frame keeps a copy of the weight gradients per
  frame until they are summed (+70% at 4 frames). `tf.map_fn` over frames
  with `keras.remat` inside does not build a gradient.
"""

import dataclasses
import math
import re

import keras

REMAT_MODES = ("none", "blocks", "planned")

# layers whose gradient needs their input (a convolution's weight gradient
# reads it); a BatchNormalization needs it only when it has a trained scale
_KEEP_INPUT = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
               keras.layers.Dense, keras.layers.MaxPooling2D, keras.layers.Multiply)
# layers whose gradient needs their output (ReLU's gradient reads it)
_KEEP_OUTPUT = (keras.layers.Activation, keras.layers.ReLU, keras.layers.MaxPooling2D)


@dataclasses.dataclass
class Segment:
    """A piece of the backbone between two checkpoints.

    Args:
        model: functional `keras.Model` from the checkpoint below to the one
            above (its layers are the backbone's own).
        recompute: run it under `keras.remat`.
    """

    model: keras.Model
    recompute: bool

    def __call__(self, x):
        run = lambda y: self.model(y, training=False)  # positional only: graph-mode custom_gradient
        return keras.remat(run)(x) if self.recompute else run(x)


@dataclasses.dataclass
class RematPlan:
    """The segments a backbone runs as, and why.

    Args:
        mode: a `REMAT_MODES` value other than `none`.
        segments: `Segment`s, input to output.
        checkpoints: names of the layers whose outputs are kept.
        modelled_peak: the modelled peak of kept activations as a share of
            keeping everything (`saved_elements`; for orientation, the
            benchmark gives the measured figure).
    """

    mode: str
    segments: list
    checkpoints: list
    modelled_peak: float

    def __call__(self, x):
        for segment in self.segments:
            x = segment(x)
        return x

    def describe(self):
        recomputed = sum(s.recompute for s in self.segments)
        kept = "" if self.segments[-1].recompute or not self.checkpoints else (
            f"; the segment above {self.checkpoints[-1]} is kept, not recomputed")
        return (f"--remat={self.mode}: {recomputed} of {len(self.segments)} encoder segments "
                f"recomputed in the backward pass, checkpoints at "
                f"{', '.join(self.checkpoints) or 'none'}{kept}; modelled activation peak "
                f"{self.modelled_peak:.0%} of --remat=none")


class _Graph:
    """A functional model's nodes in execution order, with what the backward
    pass keeps for each and where the whole network passes through one tensor."""

    def __init__(self, model):
        self.model = model
        nodes = []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            nodes += [n for n in model._nodes_by_depth[depth]
                      if n.operation is not None and not n.is_input]
        self.nodes = nodes
        consumers, last_use = {}, {}
        for position, node in enumerate(nodes):
            for tensor in node.input_tensors:
                consumers.setdefault(id(tensor), []).append(node.operation)
                last_use[id(tensor)] = position
        for tensor in model.outputs:
            last_use[id(tensor)] = len(nodes)
        self.input = model.inputs[0]
        # what the gradient of the network keeps of each node's outputs
        self.kept = [sum(_elements(t) for t in node.outputs
                         if isinstance(node.operation, _KEEP_OUTPUT)
                         or any(_keeps_input(c) for c in consumers.get(id(t), [])))
                     for node in nodes]
        # positions after which one tensor, that node's output, is all that is live
        live = {id(self.input)}
        self.cuts = []
        for position, node in enumerate(nodes[:-1]):
            live |= {id(t) for t in node.outputs if last_use.get(id(t), -1) > position}
            live -= {id(t) for t in node.input_tensors if last_use[id(t)] == position}
            if len(node.outputs) == 1 and live == {id(node.outputs[0])}:
                self.cuts.append(position)

    def output(self, position):
        return self.input if position < 0 else self.nodes[position].outputs[0]

    def name(self, position):
        return self.nodes[position].operation.name


def _elements(tensor):
    return math.prod(d or 1 for d in tensor.shape[1:])


def _keeps_input(layer):
    if isinstance(layer, keras.layers.BatchNormalization):
        return bool(layer.scale) and layer.trainable
    return isinstance(layer, _KEEP_INPUT)


def _first_trainable(graph):
    for position, node in enumerate(graph.nodes):
        if node.operation.trainable and node.operation.trainable_weights:
            return position
    return len(graph.nodes)


def saved_elements(graph, cuts, first_trainable=0):
    """The modelled peak, in elements per image, of what the backward pass
    keeps when the backbone is cut at `cuts` (node positions): while a
    segment is recomputed, the inputs of it and of every segment below,
    a copy of its input (`tf.recompute_grad` adds a dependency to it), its
    activations and the gradient of its output. With no cut this is
    everything the network keeps."""
    kept = [0 if p < first_trainable else k for p, k in enumerate(graph.kept)]
    bounds = [-1, *cuts, len(graph.nodes) - 1]
    stored, peak = 0, 0
    for below, above in zip(bounds[:-1], bounds[1:]):
        size_in = _elements(graph.output(below))
        stored += size_in
        peak = max(peak, stored + size_in + sum(kept[below + 1:above + 1])
                   + _elements(graph.output(above)))
    return peak


def _frozen_cut(graph, first_trainable):
    """The last cut below the first trainable layer (-1: none): what is
    below it gets no gradient and is never worth recomputing."""
    return max([c for c in graph.cuts if c < first_trainable], default=-1)


def _planned_cuts(graph, first_trainable):
    """The cuts with the least modelled peak: for a budget, the plan that
    keeps the least input below each cut; the budget by bisection. A frozen
    bottom is one segment of its own."""
    kept = [0 if p < first_trainable else k for p, k in enumerate(graph.kept)]
    prefix = [0]
    for k in kept:
        prefix.append(prefix[-1] + k)
    origin = _frozen_cut(graph, first_trainable)
    ends = [c for c in graph.cuts if c > origin] + [len(graph.nodes) - 1]
    size = lambda p: _elements(graph.output(p))

    def plan(budget):
        best, previous = {origin: 0}, {}
        for end in ends:
            for start in [origin, *ends]:
                if start >= end:
                    break
                if start not in best:
                    continue
                stored = best[start] + size(start)
                peak = stored + size(start) + prefix[end + 1] - prefix[start + 1] + size(end)
                if peak <= budget and stored < best.get(end, math.inf):
                    best[end], previous[end] = stored, start
        if ends[-1] not in best:
            return None
        cuts, position = [], previous[ends[-1]]
        while position > origin:
            cuts.append(position)
            position = previous[position]
        return sorted(cuts + ([origin] if origin >= 0 else []))

    low, high = 0, saved_elements(graph, [], first_trainable)
    while high - low > 1:
        middle = (low + high) // 2
        if plan(middle) is None:
            low = middle
        else:
            high = middle
    return plan(high)


def plan_remat(backbone, mode, block_end_pattern):
    """Cuts `backbone` into segments for `mode`.

    Args:
        backbone: a functional `keras.Model` with one input and one output,
            its trainable flags already set (`--finetune_blocks`).
        mode: `blocks` or `planned`.
        block_end_pattern: regex of the layers that end a block.

    Returns:
        A `RematPlan`.
    """
    if mode not in REMAT_MODES[1:]:
        raise ValueError(f"unknown remat mode {mode!r}; choose one of {', '.join(REMAT_MODES)}")
    graph = _Graph(backbone)
    first = _first_trainable(graph)
    if mode == "blocks":
        pattern = re.compile(block_end_pattern)
        cuts = [c for c in graph.cuts if pattern.match(graph.name(c))]
    else:
        cuts = _planned_cuts(graph, first)
    bounds = [-1, *cuts, len(graph.nodes) - 1]
    segments = []
    for k, (below, above) in enumerate(zip(bounds[:-1], bounds[1:])):
        model = keras.Model(graph.output(below), graph.output(above),
                            name=f"{backbone.name}_segment{k}")
        # a segment below the first trainable layer gets no gradient at all
        trains = above >= first
        top = k == len(bounds) - 2
        segments.append(Segment(model, trains and not (mode == "planned" and top)))
    full = saved_elements(graph, [], first)
    return RematPlan(mode, segments, [graph.name(c) for c in cuts],
                     saved_elements(graph, cuts, first) / full if full else 1.0)
