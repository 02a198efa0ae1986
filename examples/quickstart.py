"""Quick start: the Python API of mibpcert on two moons.

Trains a 2-20-1 ReLU MLP with SGD while bounding every parameter that SGD could reach if every
training point were moved by up to eps = 0.01 (l-infinity), then certifies the test predictions
of every model in that parameter box. Run:  .venv/bin/python examples/quickstart.py
"""
from mibpcert import TrainConfig, certified_train, certify, data, mlp, threats

ds = data.two_moons(n_train=1000, n_test=200, n_val=200, noise=0.1, seed=0)
model = mlp([2, 20, 1], seed=0)  # the initial weights are part of the certified recipe
threat = threats.LinfFeatures(eps=0.01)  # every training point, every feature, |delta| <= 0.01
cfg = TrainConfig(epochs=10, lr=0.1, lr_decay=0.8, batch_size=100, loss="bce", select_epoch=True)

result = certified_train(model, ds.X_train, ds.y_train, threat, cfg, ds.X_val, ds.y_val)
report = certify(result, ds.X_test, ds.y_test, test_eps=0.0)

widths = result.widths()  # {parameter name: upper - lower}
print(f"selected epoch        {result.selected_epoch}")
print(f"max parameter width   {max(float(w.max()) for w in widths.values()):.3g}")
print(f"clean accuracy        {report.clean_accuracy:.3f}")
print(f"certified accuracy    {report.certified_accuracy:.3f}")
print(f"accuracy bounds       [{report.accuracy_bounds[0]:.3f}, {report.accuracy_bounds[1]:.3f}]")
