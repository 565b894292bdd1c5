from bastion.desktop.cli import main

raise SystemExit(main())
