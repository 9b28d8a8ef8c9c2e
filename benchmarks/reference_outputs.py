"""Hash the outputs of reference attack configurations on 4 bundled MNIST images: a refactor
that must not change results is checked by comparing the hashes before and after it.

    python benchmarks/reference_outputs.py OUT.json [--compare benchmarks/reference_outputs_0_1_0.json]

Per configuration: the SHA-256 (first 16 hex digits) of the adversarial images, the success
flags and the forward passes per image. One torch thread; the hashes hold on one machine and
torch build (floating-point results differ across CPUs).
`reference_outputs_0_1_0.json` holds strattack 0.1.0's outputs on this project's machine.
"""
import hashlib, sys, json
import torch
torch.set_num_threads(1)
from strattack.data.samples import load_samples
from strattack.models.pretrained import load_pretrained
from strattack import attacks as A

x, y, _ = load_samples("mnist")
model = load_pretrained("mnist")
x, y = x[:4], y[:4]
t = (y + 1) % 10
small = dict(binary_search_steps=2, max_iterations=20, refine_search_steps=1, refine_iterations=10)
cases = {
  "str_default": lambda: A.str_attack(model, x, t, targeted=True, true_labels=y, **small),
  "str_app_f": lambda: A.str_attack(model, x, t, targeted=True, tau=2.0, **small),
  "str_authors": lambda: A.str_attack(model, x, t, targeted=True, preset="authors_code",
                                      binary_search_steps=2, max_iterations=10, iteration_growth=5,
                                      refine_search_steps=1, refine_iterations=10, group_size=2, stride=2),
  "str_linf": lambda: A.str_attack_linf(model, x, y, epsilon=0.3, **small),
  "admm_tau0": lambda: A.admm_attack(model, x, t, targeted=True, tau=0.0, **small),
  "admm_elastic": lambda: A.admm_attack(model, x, y, distortion="elastic", overlap="group", stride=1, **small),
  "cw_l2": lambda: A.cw_l2(model, x, t, targeted=True, binary_search_steps=4, max_iterations=100),
  "cw_linf": lambda: A.cw_linf(model, x, y, max_iterations=30),
  "ead": lambda: A.ead(model, x, t, targeted=True, binary_search_steps=4, max_iterations=100),
  "fgm": lambda: A.fgm(model, x, y),
  "ifgsm": lambda: A.ifgsm(model, x, y, epsilon=0.2),
  "str_half": lambda: A.str_attack(model, x.half(), t, targeted=True, **small),
}
out = {}
for name, fn in cases.items():
    r = fn()
    h = hashlib.sha256(r.adv.double().numpy().tobytes()).hexdigest()[:16]
    out[name] = [h, r.success.tolist(), r.forward_passes.tolist() if r.forward_passes is not None else None]
    print(name, out[name], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
if len(sys.argv) > 3 and sys.argv[2] == "--compare":
    before = json.load(open(sys.argv[3]))
    changed = [name for name in before if before[name] != out.get(name)]
    print("identical" if not changed else f"changed: {changed}")
    sys.exit(1 if changed else 0)
