from app import app, greet, nap

print("greet", greet.add_task("  ada ", timeout=30).returning)
naps = app.add_tasks([nap(0.3) for _ in range(4)])
spans = [t.wait_result(timeout=30).returning for t in naps]
most = max(sum(1 for s in spans if s[0] < at < s[1]) for at in (s[0] + 0.01 for s in spans))
print("at once", most)
