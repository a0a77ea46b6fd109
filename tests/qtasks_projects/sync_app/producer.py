from app import app, count, describe, divide, relay

from qtasks.stats.sync_stats import SyncStats

print("square", app.add_task("square", 7, timeout=30).returning)
print("relay", relay.add_task(4, timeout=30).returning)
print("shout", app.add_task("shout", "hi", timeout=30).returning)
print("total", app.add_task("total", 1, 2, 3, timeout=30).returning)
print("count", count.add_task(3, timeout=30).returning)
record = describe.add_task(name="pen", value=3, timeout=30)
print("describe", record.returning, record.is_testing)
failed = divide.add_task(1, 0, timeout=30)
print("divide", failed.status, app.get(failed.uuid).retry_parent_uuid is not None)
print("missing", app.get("00000000-0000-0000-0000-000000000000"))
print("tasks", ",".join(sorted(name for name in app.tasks)))
inspected = SyncStats(app).inspect()
print("inspect", "square" in inspected.tasks())
