"""Action pages (petitions, pledges, event sign-ups) at /act/<slug>/, with coalition opt-ins."""
