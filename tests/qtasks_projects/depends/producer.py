from app import charge

print("first", charge.add_task(2, timeout=30).returning)
print("second", charge.add_task(5, timeout=30).returning)
