from arges.api.crds import DEFINITIONS, all_crds, crd


def test_every_caller_gets_the_crds_as_built_and_a_copy_of_its_own() -> None:
    first = all_crds()
    assert first == [crd(d) for d in DEFINITIONS]
    first[0]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"].clear()
    first.pop()
    assert all_crds() == [crd(d) for d in DEFINITIONS]
