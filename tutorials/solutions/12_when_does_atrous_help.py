"""Solutions to the exercises of tutorial 12 (when does atrous convolution help); run it to check them."""

from atrous.receptive_field.arithmetic import hdc_max_distance, reachable_offsets

# 1. (1, 2, 4, 8) starts dense and each rate is at most 1 + 2 * (the reach so far), so every offset
#    from -15 to 15 is reached: M_2 = 2 <= 3. (2, 4, 8, 16) has the common factor 2: every sum of
#    +-2, +-4, +-8, +-16 is even, so all 30 odd offsets in -30..30 are holes.
assert hdc_max_distance((1, 2, 4, 8)) <= 3
assert reachable_offsets((1, 2, 4, 8)) == set(range(-15, 16))
holes = set(range(-30, 31)) - reachable_offsets((2, 4, 8, 16))
assert holes == {o for o in range(-30, 31) if o % 2} and len(holes) == 30

# 2. Rates that triple, (1, 3, 9, 27): every integer from -40 to 40 is a sum of +-1, +-3, +-9, +-27
#    (balanced ternary), so the stack reaches 40 px with no hole, the most four 3x3 layers can.
#    HDC agrees: M_4 = 27, M_3 = max(27 - 18, 27 - 36, 9) = 9, M_2 = max(9 - 6, 9 - 12, 3) = 3 <= 3.
schedule = (1, 3, 9, 27)
assert reachable_offsets(schedule) == set(range(-40, 41))
assert hdc_max_distance(schedule) == 3
assert len(reachable_offsets(schedule)) == 3 ** 4  # every one of the 81 tap combinations is distinct
print("1: (2, 4, 8, 16) misses the odd offsets; 2:", schedule, "reaches 40 px with no hole")
