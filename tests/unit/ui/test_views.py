"""The clusters page's rows: members with their versions and roll-out, the cluster's line."""

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
