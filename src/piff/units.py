"""Physical constants and unit conversions: the one place they are defined.

piff keeps physical units at every boundary: metres (depth, elevation, cell size),
mm/h (rainfall intensity), seconds (time steps), m/s (velocity), m^2 (hour-integrated
unit-width face discharge).
"""

GRAVITY = 9.81  # m s-2
SECONDS_PER_HOUR = 3600.0
MM_PER_M = 1000.0
M2_PER_KM2 = 1.0e6
# 1 mm/h expressed in m/s (= 2.7778e-7)
MM_PER_H_TO_M_PER_S = 1.0 / (MM_PER_M * SECONDS_PER_HOUR)


def mm_per_h_to_m_per_s(x):
    return x * MM_PER_H_TO_M_PER_S


def mm_to_m(x):
    return x / MM_PER_M
