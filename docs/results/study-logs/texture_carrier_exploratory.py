import sys, json, time, numpy as np, torch, warnings
sys.path.insert(0, "/work/main/benchmarks")
from utility_study import stack, logreg
from owsd.cloud import efficientnet_lite0
from owsd.data import load_splits
from sklearn.decomposition import PCA
import torch.nn.functional as F
torch.set_num_threads(1)
train, test = load_splits("mnist", "/work/shared/data" if False else "../shared/data")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
xtr, ytr = train.flat()[:N].astype(np.float64), train.labels[:N]
xte, yte = test.flat()[:1000].astype(np.float64), test.labels[:1000]
pca = PCA(64, random_state=0).fit(xtr)
etr, ete = pca.transform(xtr), pca.transform(xte)
sd = etr.std(0); etr, ete = etr / sd, ete / sd
rng = np.random.default_rng(7)
fr = np.fft.fftfreq(224)[:, None] ** 2 + np.fft.rfftfreq(224)[None] ** 2
pink = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((3, 224, 224))) / np.maximum(np.sqrt(fr), 1 / 224), s=(224, 224))
pink = torch.tensor(0.5 + 0.15 * pink / pink.std(), dtype=torch.float32).clamp(0, 1)
cloud = efficientnet_lite0()
def images(e, name, act, std):
    ws, layers, shape, tile = stack(name, 0.0)
    x = torch.tensor(e, dtype=torch.float32).reshape(-1, *shape)
    for i, (w, (k, s, p)) in enumerate(zip(ws, layers)):
        x = F.conv_transpose2d(x, w, stride=s, padding=p)
        if i < len(ws) - 1 and act == "leaky_relu": x = F.leaky_relu(x, 0.2)
    x = x - x.mean(dim=(1, 2, 3), keepdim=True)
    return (pink + std * x / x.std(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
out = {}
for cfg in [("deep6", "none", 0.005), ("deep6", "none", 0.02), ("deep6", "leaky_relu", 0.005)]:
    t0 = time.time()
    ptr = np.concatenate([cloud.predict(images(etr[i:i + 128], *cfg), verbose=False) for i in range(0, len(etr), 128)])
    pte = np.concatenate([cloud.predict(images(ete[i:i + 128], *cfg), verbose=False) for i in range(0, len(ete), 128)])
    ltr, lte = np.log(np.maximum(ptr, 1e-30)), np.log(np.maximum(pte, 1e-30))
    r = {"logreg_C1": logreg(ltr, lte, ytr, yte), "emb": logreg(etr, ete, ytr, yte), "sec": time.time() - t0}
    out[str(cfg)] = r
    print("pink carrier", cfg, r, flush=True)
json.dump(out, open(f"/tmp/exp/carrier_{N}.json", "w"))
