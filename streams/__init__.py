"""The event-sourced pipeline: the pure scorecard fold, cricket rules, view and event stores."""
