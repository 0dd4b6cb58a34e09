// Layered layout of a workflow DAG: layer = longest dependency chain from a
// root, order within a layer by a few barycentre sweeps to reduce crossings.

/**
 * steps: {id: {dependencies: [ids]}} → {layers: [[id]], edges: [[from, to]], missing: [[from, to]]}
 * Unknown dependencies are reported in `missing`; cycles are broken.
 */
export function layerize(steps) {
  const ids = Object.keys(steps);
  const known = new Set(ids);
  const deps = new Map();
  const edges = [];
  const missing = [];
  for (const id of ids) {
    const list = Array.isArray(steps[id]?.dependencies) ? steps[id].dependencies.map(String) : [];
    deps.set(id, list.filter((d) => known.has(d) && d !== id));
    for (const d of list) {
      if (known.has(d) && d !== id) edges.push([d, id]);
      else if (!known.has(d)) missing.push([d, id]);
    }
  }
  const layer = new Map();
  const visiting = new Set();
  const depth = (id) => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle: break it here
    visiting.add(id);
    let value = 0;
    for (const d of deps.get(id)) value = Math.max(value, depth(d) + 1);
    visiting.delete(id);
    layer.set(id, value);
    return value;
  };
  ids.forEach(depth);
  const count = ids.length ? Math.max(...layer.values()) + 1 : 0;
  const layers = Array.from({ length: count }, () => []);
  for (const id of ids) layers[layer.get(id)].push(id);
  layers.forEach((l) => l.sort());

  const children = new Map(ids.map((id) => [id, []]));
  for (const [from, to] of edges) children.get(from).push(to);
  const position = () => {
    const pos = new Map();
    layers.forEach((l) => l.forEach((id, i) => pos.set(id, i)));
    return pos;
  };
  const bary = (id, neighbours, pos) => {
    const values = neighbours.map((n) => pos.get(n)).filter((v) => v !== undefined);
    return values.length ? values.reduce((a, b) => a + b, 0) / values.length : pos.get(id);
  };
  for (let sweep = 0; sweep < 4; sweep += 1) {
    let pos = position();
    for (let i = 1; i < layers.length; i += 1) {
      layers[i].sort((a, b) => bary(a, deps.get(a), pos) - bary(b, deps.get(b), pos));
      pos = position();
    }
    for (let i = layers.length - 2; i >= 0; i -= 1) {
      layers[i].sort((a, b) => bary(a, children.get(a), pos) - bary(b, children.get(b), pos));
      pos = position();
    }
  }
  return { layers, edges, missing };
}
