"""The dashboard's views: the clusters page's rows and versions line, which Events it keeps."""

from arges.ui import views

CLUSTER = {
    "spec": {"controlPlane": {"replicas": 1}, "workers": [{"name": "w", "replicas": 2}]},
    "status": {
        "talosVersion": "v1.11.7",
        "kubernetesVersion": "1.34.1",
        "updated": "1/2",
        "members": [
            {
                "server": "a",
                "role": "controlplane",
                "pool": "control-plane",
                "state": "Ready",
                "talosVersion": "v1.11.7",
                "kubernetesVersion": "1.34.1",
                "rollout": "UpToDate",
            },
            {
                "server": "b",
                "role": "worker",
                "pool": "w",
                "state": "Provisioning",
                "rollout": "Failed",
                "message": "it came back on Talos v1.11.6, not v1.11.7",
            },
        ],
    },
}


def test_members_show_versions_and_roll_out_state() -> None:
    rows, ready, desired = views.members(CLUSTER)
    assert (ready, desired) == (1, 3)
    assert rows[0]["talosVersion"] == "v1.11.7" and rows[0]["rollout"] == "UpToDate"
    assert rows[1]["talosVersion"] == "" and rows[1]["rollout"] == "Failed"
    assert rows[1]["message"] == "it came back on Talos v1.11.6, not v1.11.7"


def test_the_clusters_versions_line() -> None:
    assert views.versions(CLUSTER) == "Talos v1.11.7 · Kubernetes 1.34.1 · updated 1/2"
    assert views.versions({"status": {"kubernetesVersion": "1.34.1"}}) == "Kubernetes 1.34.1"
    assert views.versions({}) == ""


def test_the_dashboard_forgets_all_but_the_newest_events_in_batches() -> None:
    def event(minute: int) -> dict[str, object]:
        return {"lastTimestamp": f"2026-12-05T10:{minute:02d}:00Z"}

    held = {f"e{m}": event(m) for m in range(5)}
    assert views.newest_events(held, 4) == [], "up to a quarter more are kept"
    held["e5"] = event(5)
    assert views.newest_events(held, 4) == ["e0", "e1"]
    held = {"late": event(30), "first": {"metadata": {"creationTimestamp": "2026-12-05T09:00Z"}}}
    assert views.newest_events(held | {f"x{m}": event(m) for m in range(4)}, 4) == ["first", "x0"]
