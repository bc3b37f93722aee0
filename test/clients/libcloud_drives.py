"""Every drive call of Apache libcloud's CloudSigma API 2.0 driver, run against the emulator.

A client no one here wrote: Debian's python3-libcloud. The endpoint comes from CSURI
(http://127.0.0.1:PORT/api/2.0/), the credentials from CSAUTH (USER:SECRET), never from argv.
Each call's outcome is checked here; a JSON report on stdout names the drives it made, so the
test that runs it (test/clients/libcloud.test.ts) can check their bytes on the emulator.
Exit status 0 when every check passed, 1 with the failing check on stderr otherwise.
"""

import json
import os
import sys
from urllib.parse import urlsplit

from libcloud.compute.drivers.cloudsigma import CloudSigma_2_0_NodeDriver, CloudSigmaError

GiB = 1024**3


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def connect():
    url = urlsplit(os.environ["CSURI"])
    check(url.hostname == "127.0.0.1" and url.path == "/api/2.0/", f"CSURI {url.geturl()} is not the loopback emulator")
    user, secret = os.environ["CSAUTH"].split(":", 1)
    # the driver refuses secure=False when it is built (Basic auth must not travel in clear); on
    # loopback the emulator speaks plain http, so the connection is switched after construction
    driver = CloudSigma_2_0_NodeDriver(user, secret, secure=True, host=url.hostname, port=url.port)
    driver.connection.secure = 0
    driver.connection.connect()
    # the driver polls a drive every 5 s while it waits for a status; the emulator is quicker
    driver.DRIVE_TRANSITION_SLEEP_INTERVAL = 0.02
    driver.DRIVE_TRANSITION_TIMEOUT = 30
    return driver


def settled(driver, drive, status="unmounted"):
    return driver._wait_for_drive_state_transition(drive, status, timeout=30)


def main():
    driver = connect()
    report = {"calls": []}

    def called(name):
        report["calls"].append(name)

    check(driver.list_volumes() == [], "list_volumes: a fresh emulator has no drives")
    called("list_volumes")

    first = driver.create_volume("libcloud-first", 1)
    check(first.status == "creating" and first.size == 1 and first.media == "disk", f"create_volume: {first!r}")
    called("create_volume")
    second = driver.ex_create_drive("libcloud-second", 2, media="cdrom", ex_avoid=[first.id])
    check(second.status == "creating" and second.size == 2 and second.media == "cdrom", f"ex_create_drive: {second!r}")
    called("ex_create_drive")
    first = settled(driver, first)
    second = settled(driver, second)

    got = driver.ex_get_drive(first.id)
    check((got.id, got.name, got.size, got.status) == (first.id, "libcloud-first", 1, "unmounted"), f"ex_get_drive: {got!r}")
    check(got.extra["mounted_on"] == [] and got.extra["storage_type"] == "dssd", f"ex_get_drive extra: {got.extra!r}")
    called("ex_get_drive")

    mine = {drive.id: drive for drive in driver.ex_list_user_drives()}
    check(set(mine) == {first.id, second.id}, f"ex_list_user_drives: {sorted(mine)}")
    called("ex_list_user_drives")
    check({drive.id for drive in driver.list_volumes()} == set(mine), "list_volumes: the same drives")

    groups = driver.ex_list_drives_availability_groups()
    check(isinstance(groups, list) and all(isinstance(group, list) for group in groups), f"groups: {groups!r}")
    check(not any(first.id in group and second.id in group for group in groups), "avoid: the two share a host")
    called("ex_list_drives_availability_groups")

    clone = driver.ex_clone_drive(first, name="libcloud-clone")
    check(clone.status == "cloning_dst" and clone.name == "libcloud-clone" and clone.size == 1, f"ex_clone_drive: {clone!r}")
    clone = settled(driver, clone)
    called("ex_clone_drive")

    resized = driver.ex_resize_drive(first, 3)
    check(resized.status == "resizing" and resized.size == 3, f"ex_resize_drive: {resized!r}")
    resized = settled(driver, resized)
    check(resized.size == 3, f"ex_resize_drive, settled: {resized!r}")
    called("ex_resize_drive")

    library = driver.ex_list_library_drives()
    check(len(library) >= 2 and all(drive.status == "unmounted" for drive in library), f"ex_list_library_drives: {library!r}")
    called("ex_list_library_drives")
    images = driver.list_images()
    check(images and all(image.extra["image_type"] == "preinst" for image in images), f"list_images: {images!r}")
    called("list_images")
    source = next(drive for drive in library if drive.media == "disk")
    from_library = settled(driver, driver.ex_clone_drive(source, name="libcloud-from-library"))
    check(from_library.size == source.size and from_library.name == "libcloud-from-library", f"library clone: {from_library!r}")
    called("ex_clone_drive (library drive)")

    try:
        driver.ex_get_drive("00000000-0000-4000-8000-000000000000")
        check(False, "ex_get_drive of a missing drive did not fail")
    except CloudSigmaError as error:
        check(error.http_code == 404 and error.error_type == "notexist", f"missing drive: {error!r}")
    called("ex_get_drive (missing)")

    check(driver.destroy_volume(first) is True, "destroy_volume")
    called("destroy_volume")
    check(driver.ex_destroy_drive(driver.ex_get_drive(second.id)) is True, "ex_destroy_drive")
    called("ex_destroy_drive")
    left = {drive.id for drive in driver.ex_list_user_drives()}
    check(left == {clone.id, from_library.id}, f"after destroying two: {sorted(left)}")
    # the clones stay: the test checks their bytes on the emulator
    report["clone"] = clone.id
    report["library_source"] = source.id
    report["from_library"] = from_library.id
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (AssertionError, CloudSigmaError) as failure:
        print(f"libcloud_drives: {type(failure).__name__}: {failure}", file=sys.stderr)
        sys.exit(1)
