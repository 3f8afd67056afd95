"""Graph rewrite of an exported recognizer: keep its sequence head in 4-D.

The torch model squeezes the collapsed feature map (N, C, 1, T) to (N, C, T) and runs its context
and classifier as 1-D convolutions. onnxruntime's fast CPU layout (NCHWc, blocked channels) only
covers 2-D convolutions, so every 1-D one falls back to the plain kernel and costs a layout
reorder: the depthwise k=5 context conv alone took 7% of the network's time for 0.2% of its
multiply-adds. Here those convolutions become 2-D ones with a (1, k) kernel on (N, C, 1, T), the
squeeze moves to just before the final transpose, and the state head's mean runs over (1, T).
Same weights, same arithmetic (outputs match to float rounding); the whole graph stays NCHWc.
"""

from __future__ import annotations

import numpy as np


def sequence_head_to_4d(model) -> int:
    """Rewrite `model` (onnx.ModelProto, float, as torch exports PlateRecognizer) in place.
    Returns the number of convolutions turned 2-D; 0 when the graph has no squeezed head (already
    rewritten). Raises ValueError on a graph shape it does not know (nothing is half-changed then:
    the rewrite is planned first and applied after)."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    init = {i.name: i for i in g.initializer}
    if not any(n.op_type == "Conv" and n.input[1] in init and len(init[n.input[1]].dims) == 3 for n in g.node):
        return 0  # no 1-D convolution: rewritten already (or never had a squeezed head)
    squeezes = [n for n in g.node if n.op_type == "Squeeze"]
    if len(squeezes) != 1:
        raise ValueError(f"expected one Squeeze in the recognizer graph, found {len(squeezes)}")
    sq = squeezes[0]
    x4, x3 = sq.input[0], sq.output[0]
    axes_name = sq.input[1] if len(sq.input) > 1 else None

    promoted = {x3}  # tensors that were (N, C, T) and are now (N, C, 1, T)
    new_nodes, new_inits, changed = [], [], 0
    for n in g.node:
        if n is sq or (axes_name and n.op_type == "Constant" and n.output[0] == axes_name):
            continue
        ins = [x4 if i == x3 else i for i in n.input]
        touched = any(i in promoted for i in n.input)
        if not touched:
            new_nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            w = numpy_helper.to_array(init[n.input[1]])
            if w.ndim != 3:
                raise ValueError(f"{n.name}: a 1-D conv was expected after the squeeze, weight {w.shape}")
            k = int(attrs.get("kernel_shape", [w.shape[2]])[0])
            pads = list(attrs.get("pads", [0, 0]))
            new_inits.append(numpy_helper.from_array(np.ascontiguousarray(w[:, :, None, :]), n.input[1]))
            new_nodes.append(helper.make_node(
                "Conv", ins, list(n.output), name=n.name, group=int(attrs.get("group", 1)),
                kernel_shape=[1, k], pads=[0, pads[0], 0, pads[1]],
                strides=[1, int(attrs.get("strides", [1])[0])], dilations=[1, int(attrs.get("dilations", [1])[0])]))
            promoted.update(n.output)
            changed += 1
        elif n.op_type in ("Relu", "Add", "Mul", "Sigmoid", "Clip"):
            new_nodes.append(helper.make_node(n.op_type, ins, list(n.output), name=n.name))
            new_nodes[-1].attribute.extend(n.attribute)
            promoted.update(n.output)
        elif n.op_type == "Transpose" and list(attrs.get("perm", [])) == [0, 2, 1]:
            flat = n.input[0] + "/squeezed"
            new_nodes.append(helper.make_node("Squeeze", [ins[0], "head_squeeze_axes"], [flat], name=n.name + "/squeeze"))
            new_nodes.append(helper.make_node("Transpose", [flat], list(n.output), name=n.name, perm=[0, 2, 1]))
            new_inits.append(numpy_helper.from_array(np.array([2], np.int64), "head_squeeze_axes"))
        elif n.op_type == "ReduceMean" and list(attrs.get("axes", [])) == [2] and attrs.get("keepdims", 1) == 0:
            new_nodes.append(helper.make_node("ReduceMean", ins, list(n.output), name=n.name, axes=[2, 3], keepdims=0))
        else:
            raise ValueError(f"{n.name}: {n.op_type} on the squeezed sequence; the rewrite does not know it")
    if changed == 0:
        raise ValueError("no 1-D convolution after the squeeze: not a recognizer graph")
    for t in new_inits:
        if t.name in init:
            init[t.name].CopyFrom(t)
        else:
            g.initializer.append(t)
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]  # shapes inferred at export no longer hold; onnxruntime infers its own
    onnx.checker.check_model(model)
    return changed
