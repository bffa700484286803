"""
The garbage-collector settings the marketplace and tradechat server processes run with.
"""

import gc

from twisted.trial import unittest

from marketplace.collector import YOUNG_THRESHOLD, CollectorSettings


class CollectorSettingsTests(unittest.TestCase):
    def setUp(self):
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(700, 10, 10)

    def test_start_freezes_and_raises_the_young_threshold_stop_undoes_both(self):
        settings = CollectorSettings()
        settings.startService()
        self.addCleanup(lambda: settings.running and settings.stopService())
        self.assertEqual(gc.get_threshold(), (YOUNG_THRESHOLD, 10, 10))
        self.assertGreater(gc.get_freeze_count(), 0)
        settings.stopService()
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_a_higher_threshold_is_kept(self):
        gc.set_threshold(50_000, 10, 10)
        settings = CollectorSettings()
        settings.startService()
        self.addCleanup(settings.stopService)
        self.assertEqual(gc.get_threshold(), (50_000, 10, 10))

    def test_settings_last_until_the_last_instance_stops_in_any_order(self):
        first, second = CollectorSettings(), CollectorSettings()
        for settings in (first, second):
            settings.startService()
            self.addCleanup(lambda settings=settings: settings.running and settings.stopService())
        first.stopService()
        self.assertEqual(gc.get_threshold(), (YOUNG_THRESHOLD, 10, 10))
        self.assertGreater(gc.get_freeze_count(), 0)
        first.stopService()  # stopping twice counts once
        second.stopService()
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        self.assertEqual(gc.get_freeze_count(), 0)
